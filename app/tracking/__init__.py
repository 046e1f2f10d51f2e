"""The one MLflow adapter: the run tracker (training, tuning), the run reader (``raytrade runs``)
and the model registry (Serve, the trader). Nothing else in raytrade imports ``mlflow``."""
