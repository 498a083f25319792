"""In-memory stand-ins for what the programs talk to (AWS, Kubernetes, Parameter Store), shared by unit tests.

One fake per boundary, each keeping what the tests read back (calls, created objects, status applies):
`aws` (boto3's SQS and SSM clients, podSync's Cloud Map client), `kube` (the Kubernetes clients of
configctl, the operator's consumer and podSync), `parameter_store` (config_service's store), `service`
(config_service's servicers on an in-process gRPC server).
"""
