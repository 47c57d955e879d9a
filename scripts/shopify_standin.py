"""Run the Shopify stand-in: Shopify's Admin GraphQL billing subset (docs/shopify.md) on loopback.

    python scripts/shopify_standin.py --port 8430 [--host 127.0.0.1] [--webhook-url URL]
                                      [--api-secret SECRET]

Prints one line once it listens; refuses a port that is taken. Its parts live in
scripts/shopify_standin_app/; its control API is under /_standin/ (tests/shopify_standin.py).
"""

import sys
from pathlib import Path

# Run as a script: its parts are a package beside it, not an installed one.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from shopify_standin_app.server import main  # noqa: E402

if __name__ == "__main__":
    main()
