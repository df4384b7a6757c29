"""The API's routes, one router per resource; :func:`learnrec.serving.api.create_app`
includes them in the order the spec lists them."""
