# One image for every process of the portal (web, workers, beat); the command picks the role.
#   docker build -t billing-portal .
#   docker compose up        (compose.yaml: web, workers, beat, PostgreSQL, Redis)
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    STATIC_MANIFEST=true \
    STATIC_ROOT=/app/static-root

WORKDIR /app
RUN useradd --create-home --uid 10001 portal
COPY pyproject.toml README.md ./
COPY accounts accounts
COPY audit audit
COPY billing billing
COPY billing_portal billing_portal
COPY console console
COPY metering metering
COPY operations operations
COPY outbox outbox
COPY plans plans
COPY retries retries
COPY deploy deploy
COPY scripts scripts
COPY static static
COPY templates templates
COPY manage.py Procfile ./
RUN pip install . \
    # collectstatic needs settings, not secrets: a throwaway key, for this step only.
    && SECRET_KEY=collectstatic-only DEBUG=false python manage.py collectstatic --noinput \
    && mkdir -p var && chown -R portal:portal var

USER portal
EXPOSE 8000
# Liveness only: /readyz also asks the database, the broker and Stripe.
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "billing_portal.wsgi"]
