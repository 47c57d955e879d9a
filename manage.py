#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")
    if sys.argv[1:2] in (["runserver"], ["testserver"], ["demo_scheduler"]):
        # A server signs sessions and payment links, the scheduler's tasks email signed links:
        # without DEBUG they exit here on a weak SECRET_KEY, and on an incomplete seller DEBUG
        # or not (runserver's reloader would only print the error and wait for a code change).
        from billing_portal.startup import exit_on_incomplete_seller, exit_on_insecure_secret_key

        exit_on_insecure_secret_key()
        exit_on_incomplete_seller()  # sets Django up; execute_from_command_line finds it done
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
