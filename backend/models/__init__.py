"""What the artist's files are and how they load: checkpoints, LoRAs, embeddings,
ControlNets, upscalers, the folders they sit in, the configs shipped for loading them
offline, the device they run on."""
