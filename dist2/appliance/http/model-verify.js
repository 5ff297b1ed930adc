export function canVerifyModel(s) {
    const x = s;
    return typeof x.startModelVerify === 'function' && typeof x.modelVerifyStatus === 'function';
}
//# sourceMappingURL=model-verify.js.map