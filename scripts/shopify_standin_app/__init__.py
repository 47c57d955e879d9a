"""The Shopify stand-in's parts (run it with scripts/shopify_standin.py): the Admin GraphQL
subset of docs/shopify.md on graphql-core, its state, confirmation pages and signed webhooks."""
