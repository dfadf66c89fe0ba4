# syntax=docker/dockerfile:1
# The image deploy/chart runs: web (uvicorn), worker and beat (celery) and the migrations Job,
# one image, the command chosen by the chart. Not built in this repository's CI: no container
# runtime or registry is reachable there (docs/deploy.md).

# --- build: dependencies into a virtualenv, static files collected and compressed ---------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt
WORKDIR /app
COPY . .
# Production storage (hashed, compressed files for WhiteNoise) into VAR_DIR/static. The key only
# satisfies settings for this one command; the real one comes from the chart's Secret. The root
# filesystem is read-only at run time, so the bytecode is compiled now.
RUN DJANGO_DEBUG=0 VAR_DIR=/app/var \
    SECRET_KEY=collectstatic-at-build-time-only-not-used-at-run-time-0123456789 \
    python manage.py collectstatic --noinput --verbosity 0 \
    && python -m compileall -q /app

# --- run: the virtualenv and the application, as a non-root user --------------------------------
FROM python:3.11-slim
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /tmp --no-create-home app
# Owned by root: the app user cannot change its own code or dependencies.
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    DJANGO_DEBUG=0 \
    VAR_DIR=/app/var
# The numeric id lets the kubelet check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
CMD ["uvicorn", "controlplane.asgi:application", "--host=0.0.0.0", "--port=8000", \
     "--no-access-log", "--ws-per-message-deflate=false"]
