"""amygdala: find, check and use emotion directions inside transformer language models."""
