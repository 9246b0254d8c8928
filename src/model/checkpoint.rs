//! Saving and loading models.
