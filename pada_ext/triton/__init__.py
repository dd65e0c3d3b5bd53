"""Triton kernels. Imported lazily: triton is optional. Without a GPU set
TRITON_INTERPRET=1 before importing, to run them in Triton's interpreter."""
