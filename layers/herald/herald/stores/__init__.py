"""DynamoDB-backed stores. Each takes a boto3 client so tests can inject moto-backed ones."""
