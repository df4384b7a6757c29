"""The scheduled maintenance Lambda function (a folder of its own, as its code asset)."""
