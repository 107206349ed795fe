# One slim image: the API under uvicorn, as a non-root user. Migrations are a separate,
# explicit step: `docker run --env-file .env IMAGE python cli.py migrate`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    PORT=8000

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tasks
WORKDIR /app

COPY requirements.lock .
RUN pip install --no-deps -r requirements.lock

COPY alembic.ini app.py cli.py ./
COPY service/ service/
COPY openapi/ openapi/
COPY handlers/ handlers/
COPY db/ db/
COPY migrations/ migrations/

USER tasks
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health', timeout=2)"]
CMD ["python", "cli.py", "serve"]
