"""Rules that fire on events, and the webhooks and emails they send (`x-sandbox-events`)."""
