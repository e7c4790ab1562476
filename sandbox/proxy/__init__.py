"""The validating proxy: `opsmerge-sandbox proxy --upstream URL`."""
