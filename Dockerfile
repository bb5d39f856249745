# labrec: multi-stage image. Build: docker build -t labrec .
# Every dependency ships as a wheel for linux/amd64 and arm64, so neither stage needs a compiler;
# the final stage gets only the virtualenv and the catalog.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY service ./service
RUN python -m venv /opt/labrec \
    && /opt/labrec/bin/pip install --no-compile -c constraints.txt . \
    && /opt/labrec/bin/python -m compileall -q /opt/labrec/lib

FROM python:3.11-slim
ENV PATH=/opt/labrec/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LABREC_CATALOG_DIR=/app/catalog \
    LABREC_DATABASE_URL=sqlite+aiosqlite:////data/labrec.db
RUN groupadd --system --gid 10001 labrec \
    && useradd --system --uid 10001 --gid labrec --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin labrec \
    && mkdir -p /app /data \
    && chown labrec:labrec /data
COPY --from=build /opt/labrec /opt/labrec
# The catalog is baked in (read-only, owned by root); its content hash is the catalog version.
COPY catalog /app/catalog
WORKDIR /app
USER labrec:labrec
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2).status != 200)"]
# `serve` refuses to start without a real lab (LABREC_LAB_BASE_URL + LABREC_LAB_WEBHOOK_SECRET) or
# an explicit sandbox flag; the built-in sandbox on 0.0.0.0 also needs
# LABREC_SANDBOX_ALLOW_PUBLIC=true (demo only: publish the port on 127.0.0.1, see deploy/README.md).
ENTRYPOINT ["labrec"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
