"""Training of the learned codecs (``tcube train``)."""

from tcube.train.trainer import TrainConfig, coded_rd, train

__all__ = ["TrainConfig", "coded_rd", "train"]
