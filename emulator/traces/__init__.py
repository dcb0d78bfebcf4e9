"""Link traces: the model, canonical CSV, importers per dataset, a generator and statistics."""
