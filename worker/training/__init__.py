"""Training on MNIST: the only package that imports TensorFlow, and only after a worker forks."""
