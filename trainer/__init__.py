"""One training run: data shards -> batches -> optimizers -> validation -> curve rows."""
