//! Plugin loading, hook registry and IR injection (see the plugin issue).
