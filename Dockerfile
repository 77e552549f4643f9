# One image for the web service and the workers.
#   web:        docker run IMAGE                      (gunicorn, config/gunicorn.conf.py)
#   migrations: docker run IMAGE agegate db upgrade   (run once per release, before the web)
#   worker:     docker run IMAGE agegate worker
# The dependencies come from the lock, every pin checked against its hashes; agegate itself
# is installed on top of them without resolving anything again.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
RUN python -m venv /opt/agegate
COPY config/requirements.txt ./config/
RUN /opt/agegate/bin/pip install --no-cache-dir --require-hashes --requirement config/requirements.txt
COPY pyproject.toml README.md ./
COPY agegate ./agegate
RUN /opt/agegate/bin/pip install --no-cache-dir --no-deps .

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/agegate/bin:$PATH \
    AGEGATE_BIND=0.0.0.0:8000
RUN groupadd --system --gid 10001 agegate \
    && useradd --system --uid 10001 --gid agegate --home-dir /app --shell /usr/sbin/nologin agegate
COPY --from=build /opt/agegate /opt/agegate
WORKDIR /app
COPY config ./config
COPY wsgi.py ./
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["gunicorn", "--config", "config/gunicorn.conf.py", "wsgi:app"]
