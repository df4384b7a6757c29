"""The OpenSearch security custom resource function (a folder of its own, as its code asset)."""
