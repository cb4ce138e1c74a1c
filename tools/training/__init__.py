"""Training, data and evaluation for paintbridge's embedded default inpainting model."""
