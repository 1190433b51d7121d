"""Blocks: saved configuration and credentials (Prefect's ``prefect.blocks``)."""

from flowbus.blocks.core import Block, BlockAlreadyExists, BlockNotFound

__all__ = ["Block", "BlockAlreadyExists", "BlockNotFound"]
