"""MLflow "models from code" entry: logged with each model so loading it runs this file
instead of unpickling an object (see behave.tracking.BundlePyfunc)."""

import mlflow
from behave.tracking import BundlePyfunc

mlflow.models.set_model(BundlePyfunc())
