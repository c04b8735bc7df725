//! OWNER: instances helper.
