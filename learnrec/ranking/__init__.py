"""Re-ranking retrieval candidates with XGBoost learning-to-rank."""
