"""Models: timm backbones with local weights and input scaling, the TileNet heads."""
