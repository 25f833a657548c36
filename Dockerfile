# One image for every process; the Procfile's commands are the container commands.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 SNAPMATCH_VAR_DIR=/data
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY snapmatch snapmatch
COPY jobs jobs
COPY webapp webapp
COPY Procfile .
