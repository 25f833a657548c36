"""Snapmatch domain package: everything the web app and the workers share.

It knows neither Flask nor RQ; both edges import it, never the other way round.
"""
