"""Plain-PyTorch references of every operator: slow, obviously right, and what
the kernels are tested against."""
