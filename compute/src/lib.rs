//! Compute jobs for the BigFile provider agent (render and inference); arrives with the compute issue.
