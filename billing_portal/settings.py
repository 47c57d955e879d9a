"""One settings module, configured by environment variables (see .env.example).

Unset variables fall back to the embedded defaults of the demo: SQLite under var/, in-process
Celery tasks, emails written to files under var/mail/, Stripe pointed wherever STRIPE_API_BASE says.
"""

import os
from pathlib import Path
from typing import Any

import environ

from billing_portal.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
(BASE_DIR / "var").mkdir(exist_ok=True)  # the embedded defaults keep SQLite and mail here
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
# The demo's settings (ports, the stand-in, the demo clock) live in `.env.demo`, written by
# `make demo`, so that every `manage.py` command run beside the demo talks to the demo. They apply
# only where no database is configured: a server with a DATABASE_URL never picks up the demo's
# stand-in Stripe by accident.
DEMO_ENV_FILE = Path(os.environ.get("DEMO_ENV_FILE", BASE_DIR / ".env.demo"))
if "DATABASE_URL" not in os.environ and DEMO_ENV_FILE.exists():
    environ.Env.read_env(DEMO_ENV_FILE, overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# `make demo-advance DAYS=31` moves the demo's clock (billing_portal/demo_clock.py); a demo-only
# switch, refused without DEBUG so that production always runs on the real time.
DEMO_CLOCK_FILE = env.str("DEMO_CLOCK_FILE", default="")
DEMO_CLOCK_ON = bool(DEMO_CLOCK_FILE and DEBUG)
if DEMO_CLOCK_ON:
    from billing_portal import demo_clock

    demo_clock.install(Path(DEMO_CLOCK_FILE))
    # A login lasts SESSION_COOKIE_AGE of real time, not of the demo's: an advance of the clock
    # used to log every browser out (billing_portal/demo_sessions.py).
    SESSION_ENGINE = "billing_portal.demo_sessions"
# The fallback key is only for the demo (DEBUG=true): anything signed with a known key (payment
# confirmation links, sessions) could be forged, so without DEBUG the web server and the workers
# refuse to start with it (billing_portal/startup.py); `check --deploy` flags it too.
INSECURE_SECRET_KEY = "django-insecure-dev-only-key-change-me"
SECRET_KEY = env.str("SECRET_KEY", default=INSECURE_SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "accounts",
    "plans",
    "metering",
    "billing",
    "outbox",
    "audit",
    "console",
    "operations",
    # The top layer: its management commands are the demo's (demo_setup, demo_advance, ...).
    "billing_portal",
    "django_prometheus",
]

MIDDLEWARE = [
    # Request counts and latencies by view for /metrics (first and last, to time everything).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "billing_portal.logs.RequestContext",
    # Static files straight from the web process, compressed and cached (no separate server).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "billing_portal.middleware.ApiBodySizeLimit",
    # Before anything reads the session cookie or the database: NUL anywhere is a 400.
    "billing_portal.middleware.RefuseNulBytes",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Outside CommonMiddleware: its APPEND_SLASH redirects stay redirects.
    "billing_portal.api_errors.ApiErrorsAsJson",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.middleware.AuditRequestScope",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "billing_portal.urls"
WSGI_APPLICATION = "billing_portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo's embedded database: two writers at once (a Shopify webhook and the merchant's
    # return page, both right after an approval) would each read, then both ask to write and
    # one fail at once with "database is locked". Taking the write lock when a transaction
    # begins makes the second wait its turn instead (up to the timeout, in seconds).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20}
    )
# A persistent connection is checked before each request reuses it: after a database restart
# the first request on each worker would otherwise fail.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "var" / "static")
# Production runs `collectstatic` at build time and sets STATIC_MANIFEST=true: file names then
# carry a hash of their content, so browsers may cache them for a year. Without it (the demo,
# tests) WhiteNoise serves the files where they lie.
STATIC_MANIFEST = env.bool("STATIC_MANIFEST", default=False)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
if not STATIC_MANIFEST:
    Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)  # WhiteNoise looks there too

# --- Security: production turns these on (see .env.example); `check --deploy` is then clean.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
)
X_FRAME_OPTIONS = "DENY"

# --- Login throttling and security headers (issue 22, items 1 and 5; docs/deploy.md, "Security").
# Kept in one block: the apps and middleware are added here rather than in the lists above.
INSTALLED_APPS += ["axes", "csp"]
# Innermost, just before the request-metrics middleware: django-axes turns a refused login into
# our lockout page, which then goes out through the header middleware like any other page.
_innermost = MIDDLEWARE.index("django_prometheus.middleware.PrometheusAfterMiddleware")
MIDDLEWARE[_innermost:_innermost] = [
    "csp.middleware.CSPMiddleware",
    # Per-page policy (Stripe's pages, the API docs), Permissions-Policy and no-store.
    "billing_portal.security_headers.SecurityHeaders",
    "axes.middleware.AxesMiddleware",
]
# django-axes checks every login (the portal's /login/ and the admin's) before the password is
# looked at; authenticate() must be given the request (tests/conftest.py makes Client.login do so).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Failures are counted per username and, separately, per client address: the account is locked
# whatever address the guesses come from, and one address cannot walk through many accounts.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_USERNAME_CALLABLE = "accounts.logins.login_username"
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
# Minutes a lock lasts, counted from the failure that set it (accounts.logins.cool_off).
LOGIN_COOLOFF_MINUTES = env.int("LOGIN_COOLOFF_MINUTES", default=15)
AXES_COOLOFF_TIME = "accounts.logins.cool_off"
# A refused try while locked neither counts nor pushes the end of the lock back, so the page
# can say when to come back; refused tries never reach the password check anyway.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# Failures expire with the cool-off, not on a success: otherwise logging into one's own account
# would wipe the address's count and let it guess at others again.
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_CALLABLE = "billing_portal.views.login_locked_out"
# The client's address: REMOTE_ADDR, unless TRUSTED_PROXY_COUNT proxies that each append the
# address they saw to X-Forwarded-For stand in front (accounts.logins.client_address); what a
# client writes in that header itself is never believed.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "accounts.logins.client_address"

# Content-Security-Policy (django-csp): our pages run only our own static scripts and styles.
# Stripe.js (on the card form and the 3-D Secure page) and Swagger UI (on /api/docs/) are let
# in on those pages alone, by billing_portal/security_headers.py.
CONTENT_SECURITY_POLICY: dict[str, Any] = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "frame-src": ["'none'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
SECURE_REFERRER_POLICY = "same-origin"
# Browser features no page of ours uses; the Stripe pages let Stripe's frames ask for `payment`.
PERMISSIONS_POLICY: dict[str, list[str]] = {
    "accelerometer": [],
    "camera": [],
    "geolocation": [],
    "gyroscope": [],
    "magnetometer": [],
    "microphone": [],
    "payment": [],
    "usb": [],
}

# --- Email: unset EMAIL_URL writes each message to a file under var/mail/ (open it to read it).
EMAIL_CONFIG = env.email_url("EMAIL_URL", default=f"filemail://{BASE_DIR / 'var' / 'mail'}")
if EMAIL_CONFIG["EMAIL_BACKEND"] == "django.core.mail.backends.filebased.EmailBackend":
    # django-environ drops the leading "/" of a filemail:// path, which made the folder relative
    # to wherever the command ran; the path in the URL is absolute.
    EMAIL_CONFIG["EMAIL_FILE_PATH"] = "/" + EMAIL_CONFIG["EMAIL_FILE_PATH"].lstrip("/")
vars().update(EMAIL_CONFIG)
if DEMO_CLOCK_ON and EMAIL_CONFIG["EMAIL_BACKEND"].endswith("filebased.EmailBackend"):
    # The same files, each message stamped with the demo's time for the sent-mail page.
    EMAIL_BACKEND = "billing_portal.demo_mail.EmailBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Billing <billing@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Tax (issue 25, docs/tax.md): the selling entity, printed on every document and the seller
# of the tax decision; checked at start (billing.tax_checks, a system check). The demo's
# defaults are a made-up French company registered for OSS and for sales tax in Washington.
TAX_SELLER_LEGAL_NAME = env.str("TAX_SELLER_LEGAL_NAME", default="Helpdesk Billing SAS")
TAX_SELLER_ADDRESS = env.list(
    "TAX_SELLER_ADDRESS", default=["1 rue de l'Exemple", "75002 Paris", "France"]
)
TAX_SELLER_COUNTRY = env.str("TAX_SELLER_COUNTRY", default="FR")
TAX_SELLER_VAT_ID = env.str("TAX_SELLER_VAT_ID", default="FR11123456782")
TAX_SELLER_OSS_REGISTERED = env.bool("TAX_SELLER_OSS_REGISTERED", default=True)
# Two-letter codes of the US states where the seller is registered to collect sales tax; their
# rates are plans/tax/us_rates.json (the operator keeps both).
TAX_SELLER_US_STATES = env.list("TAX_SELLER_US_STATES", default=["WA"])
# The Terms of Service a merchant accepts when saving a card (accounts.terms): the version in
# force and where it is published. A new version is accepted with the next card saved;
# acceptances keep the version and the words shown (docs/payments.md, "Disputes").
TERMS_VERSION = env.str("TERMS_VERSION", default="v1")
TERMS_URL = env.str("TERMS_URL", default="https://billing.example/terms")
# VIES's REST API (billing/vies_gateway.py); the demo and tests point it at the stand-in.
VIES_API_URL = env.str(
    "VIES_API_URL", default="https://ec.europa.eu/taxation_customs/vies/rest-api"
)
VIES_TIMEOUT_SECONDS = env.int("VIES_TIMEOUT_SECONDS", default=10)
# The ECB's euro reference rates (plans.ecb_gateway), loaded daily: VAT stated in euros on
# invoices in another currency (docs/tax.md); the demo and tests point it at the stand-in.
ECB_RATES_URL = env.str(
    "ECB_RATES_URL", default="https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml"
)
ECB_TIMEOUT_SECONDS = env.int("ECB_TIMEOUT_SECONDS", default=10)

# --- Celery: no broker means tasks run in-process (the embedded demo defaults).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
if not CELERY_BROKER_URL:
    # With a host named, kombu stops warning "No hostname was supplied" on every command.
    CELERY_BROKER_URL = "memory://localhost/"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True  # a task killed mid-way runs again; every task is safe to run twice
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Workers log through the settings' LOGGING (JSON with task ids), not Celery's own handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# No task may run longer than this; the broker re-delivers an unacknowledged task only after the
# visibility timeout, which is longer, so a running task is never handed to a second worker.
CELERY_TASK_TIME_LIMIT = 600
CELERY_TASK_SOFT_TIME_LIMIT = 540
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    # Sending a task gives up after a few quick attempts when the broker is down (kombu's
    # default retries forever, and ingest would hang with it); the work is in the database and
    # the next sweep sends it.
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
# One queue per kind of work, so each gets its own workers (and hosts) and one kind's backlog
# never holds up another: a Black Friday ingest spike does not delay charges. First match wins.
CELERY_TASK_ROUTES = {
    "metering.partitions_*": {"queue": "billing"},  # maintenance, not ingest's hot path
    "metering.*": {"queue": "ingest"},
    "billing.tasks.payment_*": {"queue": "payments"},  # charges and Stripe's webhooks
    "*.email_*": {"queue": "email"},
    "*.webhook_*": {"queue": "webhooks"},  # deliveries to partners' endpoints
    "billing.*": {"queue": "billing"},
    "plans.*": {"queue": "billing"},
    "operations.*": {"queue": "billing"},
    "outbox.*": {"queue": "webhooks"},
}
CELERY_TASK_DEFAULT_QUEUE = "billing"
CELERY_BEAT_SCHEDULE = {
    # Pending 72-hour windows (A5, Z2–Z7) become final, and period pauses lift, when due.
    "finalize-windows": {"task": "metering.finalize_windows", "schedule": 300.0},
    # Closes every period that ended and issues its invoice; safe to overlap with itself.
    "run-billing": {"task": "billing.run_billing", "schedule": 300.0},
    # The collection sweep: lost answers reconciled, issued invoices charged (one task each),
    # webhooks whose processing failed retried.
    "collect": {"task": "billing.tasks.payment_collect_due", "schedule": 60.0},
    # Partner webhooks: retries whose wait is over, and deliveries whose task was lost.
    "webhooks": {"task": "outbox.deliver_due", "schedule": 60.0},
    # Month partitions of events and charges: the next one made, old ones archived past the
    # retention, the parents analyzed (metering.partitions).
    "partitions": {"task": "metering.partitions_maintain", "schedule": 86400.0},
    # Contested tickets the helpdesk has since merged or flagged as spam, accepted
    # (billing.ticket_disputes).
    "ticket-disputes": {"task": "billing.ticket_disputes_auto_resolve", "schedule": 3600.0},
    # Usage spikes held, loops told, holds released after 14 days (billing.spike_guard).
    "spike-guard": {"task": "billing.spike_guard_tick", "schedule": 3600.0},
    # Successful logins older than 400 days forgotten (accounts.services.login_records_prune).
    "login-history": {"task": "accounts.login_records_prune", "schedule": 86400.0},
    # VAT ids with no VIES answer, or one 30 days old, checked again (billing.tax_checks).
    "vat-ids": {"task": "billing.tax_checks.vat_ids_recheck", "schedule": 86400.0},
    # The ECB's euro reference rates of the day (published around 16:00 CET), for VAT stated
    # in euros (plans.tasks); every 6 hours, so a failed fetch is tried again the same day.
    "ecb-rates": {"task": "plans.ecb_rates_fetch", "schedule": 21600.0},
    # Proves to /readyz that beat schedules and a worker runs what it sends.
    "heartbeat": {
        "task": "operations.heartbeat",
        "schedule": env.float("BEAT_HEARTBEAT_SECONDS", default=60.0),
    },
}
# Only the beat holding this Redis lock schedules (billing_portal/beat.py); a second beat waits
# and takes over within BEAT_LOCK_TTL seconds of the first one's death.
CELERY_BEAT_SCHEDULER = "billing_portal.beat:LockedScheduler"
BEAT_LOCK_TTL = env.int("BEAT_LOCK_TTL", default=30)
# /readyz fails when the scheduler's heartbeat, the oldest subject waiting for re-evaluation or
# the oldest issued invoice waiting to be charged is older than this many seconds.
READY_SCHEDULER_MAX_AGE = env.int("READY_SCHEDULER_MAX_AGE", default=180)
READY_REEVALUATION_MAX_LAG = env.int("READY_REEVALUATION_MAX_LAG", default=600)
READY_OUTBOX_MAX_AGE = env.int("READY_OUTBOX_MAX_AGE", default=900)
# --- Operations endpoints (issue 22, item 4): who sees /metrics and the details of /readyz.
# A request sending `Authorization: Bearer <METRICS_TOKEN>` does; so does one from loopback when
# METRICS_ALLOW_LOOPBACK is on and it carries no proxy header (X-Forwarded-For, X-Real-IP,
# Forwarded). Off in production: a proxy on the same host (nginx) makes every visitor a loopback
# peer, and a proxy need not add any header. Everyone else: /metrics is a 404, /readyz a bare
# ok/unavailable (docs/operations.md, docs/deploy.md "What is public").
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOW_LOOPBACK = env.bool("METRICS_ALLOW_LOOPBACK", default=DEBUG)

# --- Data lifecycle (metering.partitions, docs/operations.md): events and charges are kept this
# many months back from the current month; with PARTITION_ARCHIVE_DIR set, beat's daily job
# writes older months there (gzip'd CSV, checksummed) and drops them. Usage before the archived
# months is closed for good. 25: two annual cycles and a month for late corrections.
USAGE_RETENTION_MONTHS = env.int("USAGE_RETENTION_MONTHS", default=25)
PARTITION_ARCHIVE_DIR = env.str("PARTITION_ARCHIVE_DIR", default="")

# --- Stripe: STRIPE_API_BASE unset means Stripe itself; the demo and tests point it at localstripe.
STRIPE_API_KEY = env.str("STRIPE_API_KEY", default="sk_test_local")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="pk_test_local")
STRIPE_JS_URL = env.str("STRIPE_JS_URL", default="https://js.stripe.com/v3/")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
# Seconds a Stripe call may take before it counts as unanswered (reconciled later, never re-sent
# blindly); also bounds how long a merchant's "Retry payment" click can wait.
STRIPE_TIMEOUT_SECONDS = env.int("STRIPE_TIMEOUT_SECONDS", default=15)

# --- Shopify (the second billing channel, docs/shopify.md). SHOPIFY_ADMIN_URL is the Admin
# GraphQL endpoint with {shop} for the shop's domain; the demo and tests point it at the
# stand-in (scripts/shopify_standin.py). SHOPIFY_API_SECRET signs Shopify's webhooks.
SHOPIFY_ADMIN_URL = env.str(
    "SHOPIFY_ADMIN_URL", default="https://{shop}/admin/api/2025-04/graphql.json"
)
SHOPIFY_API_SECRET = env.str("SHOPIFY_API_SECRET", default="")
SHOPIFY_TIMEOUT_SECONDS = env.int("SHOPIFY_TIMEOUT_SECONDS", default=15)
# Charges on Shopify's usage line stop at this cap per 30-day interval unless the plan or the
# account says otherwise; the FAQ's "$10,000 approved usage limit".
# The spike guard's loop detector at ingest (metering.holds); false turns it off (the hourly
# anomaly check and threshold emails stay). bench/ingest.py --spike-guard off measures its cost.
SPIKE_GUARD_LOOPS = env.bool("SPIKE_GUARD_LOOPS", default=True)
SHOPIFY_DEFAULT_CAPPED_AMOUNT_MINOR = env.int(
    "SHOPIFY_DEFAULT_CAPPED_AMOUNT_MINOR", default=1_000_000
)
# Test subscriptions (Shopify's `test: true`): never charged; for development stores.
SHOPIFY_TEST_CHARGES = env.bool("SHOPIFY_TEST_CHARGES", default=False)
# Encryption keys for stored secrets (Fernet keys, newest first); empty: derived from SECRET_KEY.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])

# --- The partner API.
REST_FRAMEWORK: dict[str, Any] = {
    # Keys only: the merchant pages and the console call services, never this API, so a
    # logged-in browser session is no way in (it answers 401).
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.authentication.KeyScopePermission"],
    "DEFAULT_RENDERER_CLASSES": ["accounts.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["accounts.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "billing_portal.api_errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "accounts.api_schema.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_CLASSES": ["accounts.ratelimit.KeyRateThrottle"],
}
# Requests per key per minute (docs/api.md, "Rate limits"). Ingest is sized from the ingest
# benchmark (docs/performance.md): the portal takes 10,000-28,000 events/s over HTTP, i.e.
# 10-28 batches of 1,000 per second. 3,000 requests a minute (50/s) lets one partner key send
# full batches faster than the servers can store them, while a sender of one-event batches is
# held to 50 requests/s instead of flooding the workers.
API_RATE_LIMITS = {
    "api": env.int("API_RATE_LIMIT_PER_MINUTE", default=600),
    "ingest": env.int("API_INGEST_RATE_LIMIT_PER_MINUTE", default=3000),
}
API_RATE_LIMIT_CACHE = "default"
# Partner webhook endpoints must be https; the demo (DEBUG) also takes http://127.0.0.1 ones.
WEBHOOK_ALLOW_HTTP = env.bool("WEBHOOK_ALLOW_HTTP", default=DEBUG)
# ... and go to public addresses only (outbox/public_only.py: no requests into our own network);
# the demo's receiver listens on 127.0.0.1.
WEBHOOK_ALLOW_PRIVATE = env.bool("WEBHOOK_ALLOW_PRIVATE", default=DEBUG)
# Shared by every worker (rate-limit counters): set CACHE_URL=redis://... in production; the
# embedded default is each process's own memory.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append(
        "rest_framework.renderers.BrowsableAPIRenderer"
    )
SPECTACULAR_SETTINGS = {
    "TITLE": "Billing portal API",
    "DESCRIPTION": "Partner REST API: accounts, plans, usage events, usage, invoices.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc from the installed drf-spectacular-sidecar package: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "accounts.api_schema.conventions_hook",
    ],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "InvoiceStatusEnum": "billing.models.InvoiceStatus",
        "DeliveryStatusEnum": "outbox.models.DeliveryStatus",
        "AccountStatusEnum": "accounts.models.AccountStatus",
        "SubscriptionStatusEnum": "plans.models.SubscriptionStatus",
        "AttemptStatusEnum": "billing.models.AttemptStatus",
        "PausableStateEnum": [("active", "active"), ("paused", "paused")],
        "TicketNotCountedEnum": "metering.api.TICKET_NOT_COUNTED_CODES",
        "TicketDisputeReasonEnum": "billing.models.TicketDisputeReason",
        "InvoiceReasonEnum": "billing.models.InvoiceReason",
        # Requests offer month and year; answers show every interval (30d on Shopify).
        "IntervalEnum": "plans.models.Interval",
        "IntervalInEnum": "plans.api.INTERVALS_IN",
    },
}
# Event batches are up to 1,000 events; anything larger than this is refused before parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=5 * 1024 * 1024)

# JSON lines (one object per record, with request/task/account/invoice ids) unless LOG_FORMAT
# says otherwise; the demo logs readable lines.
LOGGING = logging_config(
    as_json=env.str("LOG_FORMAT", default="console" if DEBUG else "json") == "json",
    level=env.str("LOG_LEVEL", default="WARNING"),
)
# Optional error reporting: set SENTRY_DSN and `pip install '.[sentry]'` to send exceptions there
# (no personal data, no tracing).
SENTRY_DSN = env.str("SENTRY_DSN", default="")
if SENTRY_DSN:
    import sentry_sdk

    sentry_sdk.init(dsn=SENTRY_DSN, send_default_pii=False, traces_sample_rate=0.0)
