"""The science: the modular-addition data, the batched models, the trainer and the training grid.
"""
