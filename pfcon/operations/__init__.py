"""pfcon 6's copy, upload and delete operations: records, a bounded runner, and the job flow."""
