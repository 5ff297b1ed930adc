export {};
//# sourceMappingURL=gpio-audit.js.map