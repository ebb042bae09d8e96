"""Reference implementations that no installed package ships, transcribed from their sources.

``d2l``: LeNet-5 and NiN as *Dive into Deep Learning* writes them; ``vovnet_authors``: the
VoVNet authors' code (stigma0617/VoVNet.pytorch), the reference of vovnet27_slim.
"""
