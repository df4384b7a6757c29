"""Features shared by training and serving: encodings for the towers, ranking features."""
