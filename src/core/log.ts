// The event log lives in src/core/log/ (one file per responsibility); importers keep this path.
export * from "./log/index.js";
