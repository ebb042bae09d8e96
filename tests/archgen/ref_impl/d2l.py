"""LeNet-5 and NiN as Dive into Deep Learning builds them (Zhang et al., d2l.ai), for the tests.

Transcribed from the PyTorch code of the chapters "Convolutional Neural Networks (LeNet)"
(``LeNet``) and "Modern Convolutional Neural Networks / Network in Network (NiN)"
(``nin_block``, ``NiN``). Two changes, neither of which alters the network:

* ``nn.Conv2d`` / ``nn.Linear`` with explicit input sizes instead of the book's
  ``LazyConv2d`` / ``LazyLinear``, so that the parameters exist without a first forward
  (the input sizes are the ones the book's 1x28x28 and 1x224x224 Fashion-MNIST inputs give);
* the networks are returned as the book's ``self.net`` Sequential, without the
  ``d2l.Classifier`` training wrapper and its Xavier initialisation (``d2l.init_cnn``).
"""

from __future__ import annotations

from torch import nn


def lenet5(num_classes: int = 10) -> nn.Sequential:
    """d2l's ``LeNet``: two 5x5 conv + sigmoid + 2x2 average-pool blocks, three dense layers."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, num_classes),
    )


def nin_block(in_channels: int, out_channels: int, kernel_size: int, strides: int, padding: int) -> nn.Sequential:
    """d2l's ``nin_block``: a conv followed by two 1x1 convs, each followed by ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
    )


def nin(num_classes: int = 10) -> nn.Sequential:
    """d2l's ``NiN`` for 1-channel Fashion-MNIST at 224x224: four NiN blocks, no dense layer."""
    return nn.Sequential(
        nin_block(1, 96, kernel_size=11, strides=4, padding=0),
        nn.MaxPool2d(3, stride=2),
        nin_block(96, 256, kernel_size=5, strides=1, padding=2),
        nn.MaxPool2d(3, stride=2),
        nin_block(256, 384, kernel_size=3, strides=1, padding=1),
        nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        nin_block(384, num_classes, kernel_size=3, strides=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
    )
