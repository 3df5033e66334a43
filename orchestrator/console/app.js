/* The console: see docs/console.md. */
