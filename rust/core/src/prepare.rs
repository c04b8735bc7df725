//! OWNER: lead. The prepare pipeline.
