# The sandbox as an image: listens on 0.0.0.0:4010, health at /healthz.
# docker run -p 4010:4010 opsmerge-sandbox
# Public docs backend: -e OPSMERGE_SANDBOX_HOSTED=1 (per-visitor workspaces, admin endpoints off).
# Behind a reverse proxy, name it so client addresses come from X-Forwarded-For:
#   -e OPSMERGE_SANDBOX_TRUSTED_PROXIES=10.0.0.0/8
# Several workers (and replicas) as one sandbox, on Redis: compose.yaml beside this file, or
#   -e OPSMERGE_SANDBOX_STATE=redis://HOST:6379/0 -e OPSMERGE_SANDBOX_WORKERS=4
FROM python:3.11-slim AS build
# the request path's modules are compiled by mypyc (sandbox/native.py): a C compiler for this
# stage only; the image keeps the compiled modules, not the compiler
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sandbox ./sandbox
COPY contracts ./contracts
COPY fixtures ./fixtures
RUN pip install --no-cache-dir . "mypy>=1.11" \
  && python -c 'from opsmerge_sandbox.native import main; main()' build --package-dir sandbox \
  && pip install --no-cache-dir --prefix=/install . \
  && OPSMERGE_CHECK=$(PYTHONPATH=$(ls -d /install/lib/python3.11/site-packages) python -c \
     'import opsmerge_sandbox.native as n; print(n.state)') \
  && test "$OPSMERGE_CHECK" = on

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OPSMERGE_SANDBOX_HOST=0.0.0.0 \
    OPSMERGE_SANDBOX_PORT=4010
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin sandbox
USER 10001
EXPOSE 4010
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:4010/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["opsmerge-sandbox", "serve"]
