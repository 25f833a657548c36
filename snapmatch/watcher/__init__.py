"""The photographer's side: ``snapmatch watch|upload|login``, a folder watcher that posts every new photo
to the server exactly once. It needs only requests, watchdog, rich and platformdirs (no server stack).
"""
