"""One job's work: the recipe that runs a pipeline, tiles for large regions, pixels in and
out, seams, soft selections, control maps and samplers."""
