"""BentoML services of behave: ``bentoml serve serving.service:BehaveService`` (``behave serve``).

Importing this package imports nothing heavy; :mod:`serving.schemas` holds the request and
response shapes, :mod:`serving.service` the service itself.
"""
