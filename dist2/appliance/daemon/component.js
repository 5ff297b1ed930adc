export {};
//# sourceMappingURL=component.js.map