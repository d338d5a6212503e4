DROP TABLE nonce_instances;
