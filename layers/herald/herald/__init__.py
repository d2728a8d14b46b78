"""Herald: serverless, omnichannel notifications for AWS (shared domain package)."""
