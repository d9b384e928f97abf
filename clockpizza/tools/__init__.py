"""Tools beside the pipeline: the training benchmark and the TransformerLens export."""
