-- Run once by the postgres image on an empty data directory: the services' role and their four
-- databases, owned by it (each service migrates its own schema at start-up). The password comes
-- from the container's environment (SAGA_DB_PASSWORD), not from this file.
\getenv saga_password SAGA_DB_PASSWORD
CREATE ROLE saga LOGIN PASSWORD :'saga_password';
CREATE DATABASE saga_orchestrator OWNER saga;
CREATE DATABASE saga_payment OWNER saga;
CREATE DATABASE saga_inventory OWNER saga;
CREATE DATABASE saga_notification OWNER saga;
