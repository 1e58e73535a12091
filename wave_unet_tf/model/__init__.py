"""The Wave-U-Net model: layers, builder and loading of saved models."""
