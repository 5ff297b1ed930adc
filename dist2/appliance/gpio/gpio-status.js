export {};
//# sourceMappingURL=gpio-status.js.map